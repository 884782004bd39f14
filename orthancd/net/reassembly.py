"""Turn PDV fragments back into DIMSE messages (PS3.7 6.3.1, PS3.8 annex E).

The command set is small and kept in memory; the data set is handed fragment
by fragment to a sink chosen by whoever handles the command, so a 2 GB
instance never sits in memory.
"""

from orthancd.net import dimse


class ProtocolViolation(Exception):
    """The peer broke the message sequencing rules; the association must end."""


class DiscardingSink:
    """Swallows a data set nobody wants (e.g. for a refused command)."""

    def write(self, fragment):
        pass

    def finish(self):
        pass

    def discard(self):
        pass


class MessageAssembler:
    """Feed it PDVs; it calls ``on_command(context_id, command)`` once a
    command set is complete.  That callback returns the sink that receives
    the following data set, if the command announces one.
    """

    def __init__(self, on_command):
        self._on_command = on_command
        self._command_fragments = []
        self._context_id = None
        self._sink = None

    @property
    def receiving_dataset(self):
        return self._sink is not None

    def pdv(self, context_id, control, fragment):
        is_command = control & 0x01
        is_last = control & 0x02
        if self._context_id is not None and context_id != self._context_id:
            raise ProtocolViolation("fragments of one message on different contexts")
        if is_command:
            if self._sink is not None:
                raise ProtocolViolation("command fragment while a data set is expected")
            self._context_id = context_id
            self._command_fragments.append(bytes(fragment))
            if is_last:
                self._command_complete(context_id)
        else:
            if self._sink is None:
                raise ProtocolViolation("data set fragment without a command")
            self._sink.write(fragment)
            if is_last:
                sink, self._sink, self._context_id = self._sink, None, None
                sink.finish()

    def _command_complete(self, context_id):
        encoded = b"".join(self._command_fragments)
        self._command_fragments = []
        try:
            command = dimse.decode_command(encoded)
            command_field = command.CommandField
        except Exception as exc:
            raise ProtocolViolation(f"undecodable command set: {exc}") from exc
        if command_field is None:
            raise ProtocolViolation("command set without CommandField")
        sink = self._on_command(context_id, command)
        if dimse.has_dataset(command):
            self._sink = sink if sink is not None else DiscardingSink()
        else:
            self._context_id = None

    def discard(self):
        """The association ended: drop any partial message."""
        sink, self._sink = self._sink, None
        self._command_fragments = []
        self._context_id = None
        if sink is not None:
            sink.discard()
