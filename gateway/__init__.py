"""The Tailgate gateway: one Redis pub/sub connection fanned out to many WebSocket viewers."""
