"""POST /tools/create-dicom (the work: orthancd.creation)."""
import json

from orthancd.errors import ErrorCode, OrthancError
from orthancd.lazy_modules import LazyModule
from orthancd.rest.http import read_body, render_json
from orthancd.rest.instances import request_origin

# The creation (pydicom): imported by the first request (orthancd.lazy_modules).
creation = LazyModule("orthancd.creation.create_dicom")


def install(app, server):
    @app.route("/tools/create-dicom", methods=["POST"])
    async def create_dicom(request):
        try:
            body = json.loads(read_body(request))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise OrthancError(ErrorCode.BadRequest)
        created = await creation.Creator(server).create(body, request_origin(request))
        return render_json(request, created)
