"""Tests of Tailgate as a fleet: gateway replicas behind the shipped load-balancer
configs (real HAProxy and nginx), worker processes sharing a port, and what a viewer
sees while replicas are killed, drained and restarted."""
