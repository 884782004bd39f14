"""Orthanc peers (the "OrthancPeers" of the configuration) as a client."""
