"""Lua automation, as Orthanc 1.13.0's: the LuaScripts, the callbacks driven
by the change stream (OnStoredInstance, OnStable*, OnDeleted*, OnUpdated*,
OnJob*, OnHeartBeat), the filters (HTTP requests, received instances, C-FIND
queries) and the jobs that SendToModality, SendToPeer, ModifyInstance,
Delete and CallSystem describe."""
