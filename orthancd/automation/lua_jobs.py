"""The jobs Lua callbacks submit: Orthanc's "SequenceOfOperations".

A callback describes operations (SendToModality, SendToPeer, ModifyInstance,
Delete, CallSystem); once it returns they join the current Lua job, or a new
one when there is none (or it has 1000 operations or is over).  An operation
takes the instance its script named, or the output of the operation before
it (a chain such as Delete(SendToModality(ModifyInstance(id, ...), 'pacs'))).
A job waits five seconds for more operations after running the last one, so
that the instances of a series travel in one job (and one association).
A failing operation is logged and gives no output; the job goes on.

With SaveJobs a sequence survives a restart, as Orthanc's does: each
operation is saved as the description the script gave (rebuilt by
``LuaActions.build``), with its inputs, how far it went and where its
outputs go.
"""
import os
import subprocess
import tempfile

from twisted.internet import defer

from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.ingest import Origin
from orthancd.jobs.model import CONTINUE, SUCCESS, Job
from orthancd.logs import logger

log = logger(__name__)

MAX_OPERATIONS_PER_JOB = 1000
TRAILING_TIMEOUT = 5.0


class Operation:
    """One operation of the sequence, with the instances it works on."""

    def __init__(self, index, action, description=None):
        self.index = index
        self.action = action          # async callable(instance_id) -> [output ids]
        self.description = description  # what the script asked for (saved)
        self.inputs = []              # instance IDs: given, then received
        self.current = 0
        self.next = []                # the operations its outputs go to

    def is_done(self):
        return self.current >= len(self.inputs)

    async def step(self):
        instance_id = self.inputs[self.current]
        try:
            outputs = await self.action(instance_id)
        except Exception as e:
            log.error("Lua: operation on instance {id} failed: {error}", id=instance_id,
                      error=getattr(e, "details", None) or str(e))
            outputs = []
        for target in self.next:
            target.inputs.extend(outputs)
        self.current += 1


class SequenceOfOperationsJob(Job):
    job_type = "SequenceOfOperations"

    def __init__(self, reactor, description="Lua", trailing_timeout=TRAILING_TIMEOUT):
        super().__init__()
        self._reactor = reactor
        self.description = description
        self.trailing_timeout = trailing_timeout
        self.operations = []
        self.current = 0
        self.done = False
        self._added = None            # Deferred the trailing wait sleeps on
        self.on_done = None

    def add_operation(self, action, description=None):
        """Add an operation; call ``operations_added`` once its inputs and
        links are set."""
        operation = Operation(len(self.operations), action, description)
        self.operations.append(operation)
        return operation

    def operations_added(self):
        """Wake the job if it waits for more operations."""
        if self._added is not None and not self._added.called:
            self._added.callback(None)

    async def step(self, job_id):
        if self.current == len(self.operations):
            await self._trailing_wait()
            if self.current == len(self.operations):
                self.done = True
                if self.on_done is not None:
                    self.on_done(self)
                return SUCCESS
        while self.current < len(self.operations) and self.operations[self.current].is_done():
            self.current += 1
        if self.current < len(self.operations):
            await self.operations[self.current].step()
        return CONTINUE

    def _trailing_wait(self):
        self._added = defer.Deferred()
        timer = self._reactor.callLater(self.trailing_timeout, self._added.callback, None)
        self._added.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        return self._added

    def stop(self, reason):
        # Shutting down or cancelled: no need to sleep any longer.
        if self._added is not None and not self._added.called:
            self._added.callback(None)

    def progress(self):
        return self.current / (len(self.operations) + 1)

    def public_content(self):
        return {"CountOperations": len(self.operations), "Description": self.description}

    def serialize(self):
        if any(operation.description is None for operation in self.operations):
            return None
        return {
            "Description": self.description, "TrailingTimeout": self.trailing_timeout,
            "Current": self.current, "Done": self.done,
            "Operations": [{"Operation": operation.description, "Inputs": operation.inputs,
                            "Current": operation.current,
                            "Next": [target.index for target in operation.next]}
                           for operation in self.operations],
        }

    @classmethod
    def unserialize(cls, reactor, actions, saved):
        """The saved job, its operations rebuilt by ``actions.build``."""
        job = cls(reactor, saved.get("Description", "Lua"),
                  saved.get("TrailingTimeout", TRAILING_TIMEOUT))
        for entry in saved["Operations"]:
            operation = job.add_operation(actions.build(entry["Operation"]), entry["Operation"])
            operation.inputs = list(entry["Inputs"])
            operation.current = entry["Current"]
        for entry, operation in zip(saved["Operations"], job.operations):
            operation.next = [job.operations[index] for index in entry["Next"]]
        job.current = saved["Current"]
        job.done = saved["Done"]
        return job


class LuaJobManager:
    """Turns the operations of each callback into job operations (Orthanc's
    LuaJobManager); ``actions`` builds the action of each operation."""

    def __init__(self, jobs, reactor, actions, max_operations=MAX_OPERATIONS_PER_JOB,
                 trailing_timeout=TRAILING_TIMEOUT):
        self._jobs = jobs
        self._reactor = reactor
        self._actions = actions
        self._max_operations = max_operations
        self._trailing_timeout = trailing_timeout
        self._current = None

    def submit(self, operations):
        """Add the operations a callback described (the JSON of its _job)."""
        if not operations:
            return
        if not isinstance(operations, list):
            raise OrthancError(ErrorCode.InternalError)
        actions = []
        for description in operations:
            if not isinstance(description, dict) or "Operation" not in description \
                    or "Resource" not in description:
                raise OrthancError(ErrorCode.InternalError)
            actions.append((self._actions.build(description), _text(description["Resource"]),
                            description))
        job = self._current
        is_new = job is None or job.done or len(job.operations) >= self._max_operations
        if is_new:
            job = SequenceOfOperationsJob(self._reactor, "Lua", self._trailing_timeout)
            job.on_done = self._job_done
        previous = None
        for action, resource, description in actions:
            operation = job.add_operation(action, description)
            if resource:
                operation.inputs.append(resource)
            elif previous is not None:
                previous.next.append(operation)
            previous = operation
        if is_new:
            self._current = job
            self._jobs.submit(job, 0)
        else:
            job.operations_added()

    def register(self):
        """Saved sequences come back after a restart."""
        self._jobs.register_type(SequenceOfOperationsJob.job_type, self._unserialize)

    def _unserialize(self, saved):
        job = SequenceOfOperationsJob.unserialize(self._reactor, self._actions, saved)
        # A sequence reloaded from a previous run takes no new operations.
        job.on_done = self._job_done
        return job

    def _job_done(self, job):
        if job is self._current:
            self._current = None


def _text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class LuaActions:
    """The operations themselves, on the server's domain functions."""

    def __init__(self, server, reactor):
        self._server = server
        self._reactor = reactor

    def build(self, description):
        operation = description["Operation"]
        if operation == "delete":
            return self.delete
        if operation == "store-scu":
            return self._store_scu(description)
        if operation == "store-peer":
            return self._store_peer(description)
        if operation == "modify":
            return self._modify(description)
        if operation == "call-system":
            return self._call_system(description)
        raise OrthancError(ErrorCode.ParameterOutOfRange)

    async def delete(self, instance_id):
        log.info("Lua script to delete resource {id}", id=instance_id)
        await self._server.delete_resource(instance_id, ResourceLevel.INSTANCE)
        return []

    def _store_scu(self, description):
        from orthancd.modalities import modality_registry
        from orthancd.net import scu
        configuration = self._server.configuration
        name = _text(description.get("Modality"))
        modality = modality_registry(self._server).get_modality(name)
        local_aet = description.get("LocalAet")
        body = {"LocalAet": _text(local_aet)} if local_aet is not None else {}
        settings = scu.ScuSettings.for_modality(configuration, modality, body)

        async def store_scu(instance_id):
            log.info("Lua: Sending instance {id} to modality \"{aet}\"", id=instance_id,
                     aet=modality["AET"])
            outcome = await scu.store(self._server, settings, modality, [instance_id],
                                      permissive=False)
            if outcome.failed:
                raise outcome.failed[0][1]
            return [instance_id]
        return store_scu

    def _store_peer(self, description):
        from orthancd.peer_registry import peer_registry
        from orthancd.peers import open_peer_client
        peer = peer_registry(self._server).get_peer(_text(description.get("Peer")))

        async def store_peer(instance_id):
            log.info("Lua: Sending instance {id} to peer \"{url}\"", id=instance_id,
                     url=peer["Url"])
            server = self._server
            data = await server.read_attachment(server.dicom_attachment(instance_id))
            client = await open_peer_client(server, peer)
            try:
                answer = await client.post_instance(data)
            finally:
                client.close()
            if not answer.ok:
                log.error("Lua: Unable to send instance {id} to peer \"{url}\"",
                          id=instance_id, url=peer["Url"])
                raise OrthancError(ErrorCode.NetworkProtocol)
            return [instance_id]
        return store_peer

    def _modify(self, description):
        """ModifyInstanceOperation: the Lua description is a modification
        request (Replace, Remove, RemovePrivateTags), parsed as Orthanc's
        ParseModifyRequest parses it; the copy is stored as coming from
        Lua, with ModifiedFrom."""
        from orthancd.index.base import MetadataType
        from orthancd.modification import files, requests as modification_requests
        modification = modification_requests.parse_modify(self._server, description)

        async def modify(instance_id):
            log.info("Lua: Modifying instance {id}", id=instance_id)
            try:
                data, _ = await files.modify_instance(self._server, instance_id,
                                                      modification.apply)
                outcome = await self._server.ingest.store(
                    data, Origin.lua(), attached_metadata=lambda summary: {
                        ResourceLevel.INSTANCE: {MetadataType.ModifiedFrom: instance_id}})
            except OrthancError as exc:
                # Only chain with the next operations when this one succeeds.
                log.error("Lua: Unable to modify instance {id}: {error}", id=instance_id,
                          error=exc)
                return []
            return [outcome.ids[3]]
        return modify

    def _call_system(self, description):
        command = _text(description.get("Command"))
        arguments = description.get("Arguments")
        if arguments is None:
            arguments = []
        if not isinstance(arguments, list):
            raise OrthancError(ErrorCode.BadParameterType)
        pre = []
        for argument in arguments:
            if isinstance(argument, bool) or not isinstance(argument, (str, int, float)):
                raise OrthancError(ErrorCode.BadParameterType)
            pre.append(str(argument))

        async def call_system(instance_id):
            data = await self._server.read_attachment(self._server.dicom_attachment(instance_id))
            await self._server.file_io.run(_run_on_file, command, pre, data)
            return [instance_id]
        return call_system


def _run_on_file(command, arguments, data):
    """Orthanc's SystemCallOperation: the instance goes to a temporary file
    given as the last argument of the command."""
    fd, path = tempfile.mkstemp(suffix=".dcm")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        status = subprocess.call([command] + arguments + [path])
        if status != 0:
            raise OrthancError(ErrorCode.SystemCommand,
                               "System command failed with status %d: %s" % (status, command))
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
