"""POST /tools/execute-script: run Lua in the server's persistent Lua state."""
from orthancd.logs import logger

from orthancd.errors import ErrorCode, OrthancError
from orthancd.rest.http import read_body, render_text, sized

log = logger(__name__)


def install(app, server):

    @app.route("/tools/execute-script", methods=["POST"])
    async def execute_script(request):
        if server.lua is None or not server.configuration.get("ExecuteLuaEnabled", False):
            # As Orthanc: disabled unless ExecuteLuaEnabled, for security reasons.
            log.error("The URI /tools/execute-script is disallowed for security reasons, "
                      "set ExecuteLuaEnabled to true")
            request.setResponseCode(403)
            return sized(request, b"")
        try:
            output = await server.lua.execute(read_body(request))
        except server.lua.InternalError:
            # What Orthanc answers when a script fails in a way it cannot catch.
            raise OrthancError(ErrorCode.InternalError,
                               "An unhandled exception was generated inside the HTTP server")
        except server.lua.Error as e:
            raise OrthancError(ErrorCode.CannotExecuteLua, str(e))
        return render_text(request, output)
