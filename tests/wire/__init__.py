"""Tests of the wire contract in code (wire/): names, the envelope, the publish step,
the file-path policy and the Lua scripts."""
