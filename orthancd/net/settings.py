"""DICOM server settings read from an Orthanc-style configuration mapping."""

from dataclasses import dataclass, field

from orthancd.net.transfer_syntaxes import accepted_storage_syntaxes

MINIMUM_PDU_LENGTH = 4096
MAXIMUM_PDU_LENGTH = 131072


@dataclass(frozen=True)
class ServerSettings:
    aet: str = "ORTHANC"
    check_called_aet: bool = False
    strict_aet_comparison: bool = False
    maximum_pdu_length: int = 16384
    scp_timeout: float = 30.0
    unknown_sop_class_accepted: bool = False
    storage_transfer_syntaxes: tuple = ()
    always_allow_echo: bool = True
    always_allow_store: bool = True
    always_allow_find: bool = False
    always_allow_find_worklist: bool = False
    always_allow_get: bool = False
    always_allow_move: bool = False
    check_modality_host: bool = False
    # Time allowed to the peer to send A-ASSOCIATE-RQ or to close after a
    # release (DCMTK and Orthanc use 30 s).
    artim_timeout: float = 30.0
    # AcceptedSopClasses / RejectedSopClasses (patterns; None: not set).
    accepted_sop_classes: tuple = None
    rejected_sop_classes: tuple = ()
    modalities: object = field(default_factory=dict)

    @classmethod
    def from_config(cls, config):
        pdu = int(config.get("MaximumPduLength", 16384))
        if not MINIMUM_PDU_LENGTH <= pdu <= MAXIMUM_PDU_LENGTH:
            raise ValueError(f"MaximumPduLength must be in [{MINIMUM_PDU_LENGTH},"
                             f"{MAXIMUM_PDU_LENGTH}], got {pdu}")
        aet = str(config.get("DicomAet", "ORTHANC"))
        if not 0 < len(aet) <= 16:
            raise ValueError("DicomAet must have between 1 and 16 characters")
        return cls(
            aet=aet,
            check_called_aet=bool(config.get("DicomCheckCalledAet", False)),
            strict_aet_comparison=bool(config.get("StrictAetComparison", False)),
            maximum_pdu_length=pdu,
            scp_timeout=float(config.get("DicomScpTimeout", 30)),
            unknown_sop_class_accepted=bool(config.get("UnknownSopClassAccepted", False)),
            storage_transfer_syntaxes=tuple(accepted_storage_syntaxes(config)),
            always_allow_echo=bool(config.get("DicomAlwaysAllowEcho", True)),
            always_allow_store=bool(config.get("DicomAlwaysAllowStore", True)),
            always_allow_find=bool(config.get("DicomAlwaysAllowFind", False)),
            always_allow_find_worklist=bool(config.get("DicomAlwaysAllowFindWorklist", False)),
            always_allow_get=bool(config.get("DicomAlwaysAllowGet", False)),
            always_allow_move=bool(config.get("DicomAlwaysAllowMove", False)),
            check_modality_host=bool(config.get("DicomCheckModalityHost", False)),
            accepted_sop_classes=_patterns(config.get("AcceptedSopClasses")),
            rejected_sop_classes=_patterns(config.get("RejectedSopClasses")) or (),
            modalities=config.get("DicomModalities", {}) or {},
        )

    def same_aet(self, a, b):
        if self.strict_aet_comparison:
            return a == b
        return a.strip().upper() == b.strip().upper()


def _patterns(value):
    """A list of UID patterns from the configuration (None when absent or
    empty, which Orthanc takes as "not set")."""
    if isinstance(value, str):
        value = [value]
    return tuple(str(item) for item in value) if value else None
