"""POST /tools/create-dicom (the work: orthancd.creation)."""
import json

from orthancd.errors import ErrorCode, OrthancError
from orthancd.rest.http import read_body, render_json
from orthancd.rest.instances import request_origin


def install(app, server):
    creators = []

    def creator():
        """The server's Creator, made (and pydicom imported) at the first
        request (orthancd.lazy_modules)."""
        if not creators:
            from orthancd.creation.create_dicom import Creator
            creators.append(Creator(server))
        return creators[0]

    @app.route("/tools/create-dicom", methods=["POST"])
    async def create_dicom(request):
        try:
            body = json.loads(read_body(request))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise OrthancError(ErrorCode.BadRequest)
        return render_json(request, await creator().create(body, request_origin(request)))
