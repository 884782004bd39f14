"""Reading stored instances to modify them, and storing what comes out,
for the modification jobs and the instance-level routes.

Reading, editing and writing a file are blocking: they run in the server's
file pool; storing goes through the ingest path like any upload, with its
origin and the metadata the modified instance brings along.
"""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import UnknownResource
from orthancd.modification.dataset import EditedFile


def read_instance(server, instance_id):
    """Blocking: the EditedFile of a stored instance."""
    info = server.dicom_attachment(instance_id)
    return EditedFile.parse(server.storage.read(info.uuid), server.default_encoding)


def check_instance(server, instance_id):
    """The instance exists (Orthanc's "Unknown resource", 404, otherwise)."""
    try:
        server.dicom_attachment(instance_id)
    except (UnknownResource, KeyError):
        raise OrthancError(ErrorCode.UnknownResource)


async def modify_instance(server, instance_id, edit, syntax_for=None):
    """Read an instance, ``edit(EditedFile)`` it and write it back (in the
    transfer syntax ``syntax_for(EditedFile)`` chooses, by default its
    own), in the file pool; fires (the new file's bytes, what ``edit``
    returned)."""
    def work():
        edited = read_instance(server, instance_id)
        result = edit(edited)
        syntax = syntax_for(edited) if syntax_for is not None else None
        return edited.serialize(syntax), result
    return await server.file_io.run(work)


def resource_level(index, public_id):
    """The level of a resource, None when no resource has this ID."""
    for level in ResourceLevel:
        if index.exists(public_id, level):
            return level
    return None
