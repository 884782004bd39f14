"""Find: Orthanc's matching semantics and the indexed lookup shared by
POST /tools/find and the C-FIND SCP."""
from orthancd.find.constraints import (  # noqa: F401
    Constraint, parse_dicom_query, parse_rest_query)
from orthancd.find.lookup import FindOutcome, Match, find_resources  # noqa: F401
