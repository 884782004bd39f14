"""fsync of a folder: makes durable the entries created, renamed or
removed in it (where a whole file system cannot be synced at once)."""
import os


def fsync_directory(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
