"""POST /tools/execute-script: run Lua in the server's persistent Lua state."""
from orthancd.logs import logger

from orthancd.errors import ErrorCode, OrthancError
from orthancd.rest.http import render_text, text_body

log = logger(__name__)


def install(app, server):

    @app.route("/tools/execute-script", methods=["POST"])
    async def execute_script(request):
        if server.lua is None or not server.configuration.get("ExecuteLuaEnabled", False):
            # As Orthanc: disabled unless ExecuteLuaEnabled, for security reasons.
            log.error("The URI /tools/execute-script is disallowed for security reasons, "
                      "set ExecuteLuaEnabled to true")
            request.setResponseCode(403)
            return b""
        try:
            output = await server.lua.execute(text_body(request))
        except server.lua.Error as e:
            raise OrthancError(ErrorCode.CannotExecuteLua, str(e))
        return render_text(request, output)
