"""The local backend: a server on loopback that speaks the Vtrix protocol and renders real videos."""
