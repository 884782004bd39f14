"""ZIP archives and DICOMDIR media of stored resources (Orthanc 1.13.0's ArchiveJob)."""
