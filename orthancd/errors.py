"""Orthanc's error codes, their HTTP statuses, and the exception carrying them.

Domain code raises OrthancError (or a domain exception the REST layer maps to
one); the REST layer renders it as Orthanc's JSON error body.
"""
import enum


class ErrorCode(enum.IntEnum):
    InternalError = -1
    Success = 0
    Plugin = 1
    NotImplemented = 2
    ParameterOutOfRange = 3
    NotEnoughMemory = 4
    BadParameterType = 5
    BadSequenceOfCalls = 6
    InexistentItem = 7
    BadRequest = 8
    NetworkProtocol = 9
    SystemCommand = 10
    Database = 11
    UriSyntax = 12
    InexistentFile = 13
    CannotWriteFile = 14
    BadFileFormat = 15
    Timeout = 16
    UnknownResource = 17
    IncompatibleDatabaseVersion = 18
    FullStorage = 19
    CorruptedFile = 20
    InexistentTag = 21
    ReadOnly = 22
    IncompatibleImageFormat = 23
    IncompatibleImageSize = 24
    SharedLibrary = 25
    UnknownPluginService = 26
    UnknownDicomTag = 27
    BadJson = 28
    Unauthorized = 29
    BadFont = 30
    DatabasePlugin = 31
    StorageAreaPlugin = 32
    EmptyRequest = 33
    NotAcceptable = 34
    NullPointer = 35
    DatabaseUnavailable = 36
    CanceledJob = 37
    BadGeometry = 38
    SslInitialization = 39
    DiscontinuedAbi = 40
    BadRange = 41
    DatabaseCannotSerialize = 42
    Revision = 43
    SQLiteNotOpened = 1000
    SQLiteAlreadyOpened = 1001
    SQLiteCannotOpen = 1002
    SQLiteStatementAlreadyUsed = 1003
    SQLiteExecute = 1004
    SQLiteRollbackWithoutTransaction = 1005
    SQLiteCommitWithoutTransaction = 1006
    SQLiteRegisterFunction = 1007
    SQLiteFlush = 1008
    SQLiteCannotRun = 1009
    SQLiteCannotStep = 1010
    SQLiteBindOutOfRange = 1011
    SQLitePrepareStatement = 1012
    SQLiteTransactionAlreadyStarted = 1013
    SQLiteTransactionCommit = 1014
    SQLiteTransactionBegin = 1015
    DirectoryOverFile = 2000
    FileStorageCannotWrite = 2001
    DirectoryExpected = 2002
    HttpPortInUse = 2003
    DicomPortInUse = 2004
    BadHttpStatusInRest = 2005
    RegularFileExpected = 2006
    PathToExecutable = 2007
    MakeDirectory = 2008
    BadApplicationEntityTitle = 2009
    NoCFindHandler = 2010
    NoCMoveHandler = 2011
    NoCStoreHandler = 2012
    NoApplicationEntityFilter = 2013
    NoSopClassOrInstance = 2014
    NoPresentationContext = 2015
    DicomFindUnavailable = 2016
    DicomMoveUnavailable = 2017
    CannotStoreInstance = 2018
    CreateDicomNotString = 2019
    CreateDicomOverrideTag = 2020
    CreateDicomUseContent = 2021
    CreateDicomNoPayload = 2022
    CreateDicomUseDataUriScheme = 2023
    CreateDicomBadParent = 2024
    CreateDicomParentIsInstance = 2025
    CreateDicomParentEncoding = 2026
    UnknownModality = 2027
    BadJobOrdering = 2028
    JsonToLuaTable = 2029
    CannotCreateLua = 2030
    CannotExecuteLua = 2031
    LuaAlreadyExecuted = 2032
    LuaBadOutput = 2033
    NotLuaPredicate = 2034
    LuaReturnsNoString = 2035
    StorageAreaAlreadyRegistered = 2036
    DatabaseBackendAlreadyRegistered = 2037
    DatabaseNotInitialized = 2038
    SslDisabled = 2039
    CannotOrderSlices = 2040
    NoWorklistHandler = 2041
    AlreadyExistingTag = 2042
    NoStorageCommitmentHandler = 2043
    NoCGetHandler = 2044
    UnsupportedMediaType = 3000


# Orthanc's own wording: clients match on these strings.
DESCRIPTIONS = {
    ErrorCode.InternalError: "Internal error",
    ErrorCode.Success: "Success",
    ErrorCode.Plugin: "Error encountered within the plugin engine",
    ErrorCode.NotImplemented: "Not implemented yet",
    ErrorCode.ParameterOutOfRange: "Parameter out of range",
    ErrorCode.NotEnoughMemory: "The server hosting Orthanc is running out of memory",
    ErrorCode.BadParameterType: "Bad type for a parameter",
    ErrorCode.BadSequenceOfCalls: "Bad sequence of calls",
    ErrorCode.InexistentItem: "Accessing an inexistent item",
    ErrorCode.BadRequest: "Bad request",
    ErrorCode.NetworkProtocol: "Error in the network protocol",
    ErrorCode.SystemCommand: "Error while calling a system command",
    ErrorCode.Database: "Error with the database engine",
    ErrorCode.UriSyntax: "Badly formatted URI",
    ErrorCode.InexistentFile: "Inexistent file",
    ErrorCode.CannotWriteFile: "Cannot write to file",
    ErrorCode.BadFileFormat: "Bad file format",
    ErrorCode.Timeout: "Timeout",
    ErrorCode.UnknownResource: "Unknown resource",
    ErrorCode.IncompatibleDatabaseVersion: "Incompatible version of the database",
    ErrorCode.FullStorage: "The file storage is full",
    ErrorCode.CorruptedFile: "Corrupted file (e.g. inconsistent MD5 hash)",
    ErrorCode.InexistentTag: "Inexistent tag",
    ErrorCode.ReadOnly: "Cannot modify a read-only data structure",
    ErrorCode.IncompatibleImageFormat: "Incompatible format of the images",
    ErrorCode.IncompatibleImageSize: "Incompatible size of the images",
    ErrorCode.SharedLibrary: "Error while using a shared library (plugin)",
    ErrorCode.UnknownPluginService: "Plugin invoking an unknown service",
    ErrorCode.UnknownDicomTag: "Unknown DICOM tag",
    ErrorCode.BadJson: "Cannot parse a JSON document",
    ErrorCode.Unauthorized: "Bad credentials were provided to an HTTP request",
    ErrorCode.BadFont: "Badly formatted font file",
    ErrorCode.DatabasePlugin: "The plugin implementing a custom database back-end does not fulfill the proper interface",
    ErrorCode.StorageAreaPlugin: "Error in the plugin implementing a custom storage area",
    ErrorCode.EmptyRequest: "The request is empty",
    ErrorCode.NotAcceptable: "Cannot send a response which is acceptable according to the Accept HTTP header",
    ErrorCode.NullPointer: "Cannot handle a NULL pointer",
    ErrorCode.DatabaseUnavailable: "The database is currently not available (probably a transient situation)",
    ErrorCode.CanceledJob: "This job was canceled",
    ErrorCode.BadGeometry: "Geometry error encountered in Stone",
    ErrorCode.SslInitialization: "Cannot initialize SSL encryption, check out your certificates",
    ErrorCode.DiscontinuedAbi: "Calling a function that has been removed from the Orthanc Framework",
    ErrorCode.BadRange: "Incorrect range request",
    ErrorCode.DatabaseCannotSerialize: "Database could not serialize access due to concurrent update, the transaction should be retried",
    ErrorCode.Revision: "A bad revision number was provided, which might indicate conflict between multiple writers",
    ErrorCode.SQLiteNotOpened: "SQLite: The database is not opened",
    ErrorCode.SQLiteAlreadyOpened: "SQLite: Connection is already open",
    ErrorCode.SQLiteCannotOpen: "SQLite: Unable to open the database",
    ErrorCode.SQLiteStatementAlreadyUsed: "SQLite: This cached statement is already being referred to",
    ErrorCode.SQLiteExecute: "SQLite: Cannot execute a command",
    ErrorCode.SQLiteRollbackWithoutTransaction: "SQLite: Rolling back a nonexistent transaction (have you called Begin()?)",
    ErrorCode.SQLiteCommitWithoutTransaction: "SQLite: Committing a nonexistent transaction",
    ErrorCode.SQLiteRegisterFunction: "SQLite: Unable to register a function",
    ErrorCode.SQLiteFlush: "SQLite: Unable to flush the database",
    ErrorCode.SQLiteCannotRun: "SQLite: Cannot run a cached statement",
    ErrorCode.SQLiteCannotStep: "SQLite: Cannot step over a cached statement",
    ErrorCode.SQLiteBindOutOfRange: "SQLite: Bing a value while out of range (serious error)",
    ErrorCode.SQLitePrepareStatement: "SQLite: Cannot prepare a cached statement",
    ErrorCode.SQLiteTransactionAlreadyStarted: "SQLite: Beginning the same transaction twice",
    ErrorCode.SQLiteTransactionCommit: "SQLite: Failure when committing the transaction",
    ErrorCode.SQLiteTransactionBegin: "SQLite: Cannot start a transaction",
    ErrorCode.DirectoryOverFile: "The directory to be created is already occupied by a regular file",
    ErrorCode.FileStorageCannotWrite: "Unable to create a subdirectory or a file in the file storage",
    ErrorCode.DirectoryExpected: "The specified path does not point to a directory",
    ErrorCode.HttpPortInUse: "The TCP port of the HTTP server is privileged or already in use",
    ErrorCode.DicomPortInUse: "The TCP port of the DICOM server is privileged or already in use",
    ErrorCode.BadHttpStatusInRest: "This HTTP status is not allowed in a REST API",
    ErrorCode.RegularFileExpected: "The specified path does not point to a regular file",
    ErrorCode.PathToExecutable: "Unable to get the path to the executable",
    ErrorCode.MakeDirectory: "Cannot create a directory",
    ErrorCode.BadApplicationEntityTitle: "An application entity title (AET) cannot be empty or be longer than 16 characters",
    ErrorCode.NoCFindHandler: "No request handler factory for DICOM C-FIND SCP",
    ErrorCode.NoCMoveHandler: "No request handler factory for DICOM C-MOVE SCP",
    ErrorCode.NoCStoreHandler: "No request handler factory for DICOM C-STORE SCP",
    ErrorCode.NoApplicationEntityFilter: "No application entity filter",
    ErrorCode.NoSopClassOrInstance: "DicomUserConnection: Unable to find the SOP class and instance",
    ErrorCode.NoPresentationContext: "DicomUserConnection: No acceptable presentation context for modality",
    ErrorCode.DicomFindUnavailable: "DicomUserConnection: The C-FIND command is not supported by the remote SCP",
    ErrorCode.DicomMoveUnavailable: "DicomUserConnection: The C-MOVE command is not supported by the remote SCP",
    ErrorCode.CannotStoreInstance: "Cannot store an instance",
    ErrorCode.CreateDicomNotString: "Only string values are supported when creating DICOM instances",
    ErrorCode.CreateDicomOverrideTag: "Trying to override a value inherited from a parent module",
    ErrorCode.CreateDicomUseContent: 'Use "Content" to inject an image into a new DICOM instance',
    ErrorCode.CreateDicomNoPayload: "No payload is present for one instance in the series",
    ErrorCode.CreateDicomUseDataUriScheme: "The payload of the DICOM instance must be specified according to Data URI scheme",
    ErrorCode.CreateDicomBadParent: "Trying to attach a new DICOM instance to an inexistent resource",
    ErrorCode.CreateDicomParentIsInstance: "Trying to attach a new DICOM instance to an instance (must be a series, study or patient)",
    ErrorCode.CreateDicomParentEncoding: "Unable to get the encoding of the parent resource",
    ErrorCode.UnknownModality: "Unknown modality",
    ErrorCode.BadJobOrdering: "Bad ordering of filters in a job",
    ErrorCode.JsonToLuaTable: "Cannot convert the given JSON object to a Lua table",
    ErrorCode.CannotCreateLua: "Cannot create the Lua context",
    ErrorCode.CannotExecuteLua: "Cannot execute a Lua command",
    ErrorCode.LuaAlreadyExecuted: "Arguments cannot be pushed after the Lua function is executed",
    ErrorCode.LuaBadOutput: "The Lua function does not give the expected number of outputs",
    ErrorCode.NotLuaPredicate: "The Lua function is not a predicate (only true/false outputs allowed)",
    ErrorCode.LuaReturnsNoString: "The Lua function does not return a string",
    ErrorCode.StorageAreaAlreadyRegistered: "Another plugin has already registered a custom storage area",
    ErrorCode.DatabaseBackendAlreadyRegistered: "Another plugin has already registered a custom database back-end",
    ErrorCode.DatabaseNotInitialized: "Plugin trying to call the database during its initialization",
    ErrorCode.SslDisabled: "Orthanc has been built without SSL support",
    ErrorCode.CannotOrderSlices: "Unable to order the slices of the series",
    ErrorCode.NoWorklistHandler: "No request handler factory for DICOM C-Find Modality SCP",
    ErrorCode.AlreadyExistingTag: "Cannot override the value of a tag that already exists",
    ErrorCode.NoStorageCommitmentHandler: "No request handler factory for DICOM N-ACTION SCP (storage commitment)",
    ErrorCode.NoCGetHandler: "No request handler factory for DICOM C-GET SCP",
    ErrorCode.UnsupportedMediaType: "Unsupported media type",
}

# The HTTP status Orthanc answers with for each code; anything else is a 500.
HTTP_STATUS = {
    ErrorCode.Success: 200,
    ErrorCode.ParameterOutOfRange: 400,
    ErrorCode.BadParameterType: 400,
    ErrorCode.InexistentItem: 404,
    ErrorCode.BadRequest: 400,
    ErrorCode.UriSyntax: 400,
    ErrorCode.InexistentFile: 404,
    ErrorCode.BadFileFormat: 400,
    ErrorCode.UnknownResource: 404,
    ErrorCode.FullStorage: 507,
    ErrorCode.InexistentTag: 404,
    ErrorCode.BadJson: 400,
    ErrorCode.Unauthorized: 401,
    ErrorCode.DatabaseUnavailable: 503,
    ErrorCode.NotAcceptable: 406,
    ErrorCode.BadRange: 416,
    ErrorCode.DatabaseCannotSerialize: 503,
    ErrorCode.Revision: 409,
    ErrorCode.CreateDicomNotString: 400,
    ErrorCode.CreateDicomOverrideTag: 400,
    ErrorCode.CreateDicomUseContent: 400,
    ErrorCode.CreateDicomNoPayload: 400,
    ErrorCode.CreateDicomUseDataUriScheme: 400,
    ErrorCode.CreateDicomBadParent: 400,
    ErrorCode.CreateDicomParentIsInstance: 400,
    ErrorCode.UnknownModality: 404,
    ErrorCode.UnsupportedMediaType: 415,
}

HTTP_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    409: "Conflict", 415: "Unsupported Media Type", 416: "Requested Range Not Satisfiable",
    422: "Unprocessable Entity",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    504: "Gateway Timeout", 507: "Insufficient Storage",
}


class OrthancError(Exception):
    """An error with an Orthanc error code and optional human details."""

    def __init__(self, code, details=None, http_status=None, payload=None):
        super().__init__(details or DESCRIPTIONS.get(code, str(code)))
        self.code = ErrorCode(code)
        self.details = details
        self.http_status = http_status or HTTP_STATUS.get(self.code, 500)
        # Orthanc's "ErrorPayload" (e.g. the DIMSE status of a failed C-STORE).
        self.payload = payload

    @property
    def description(self):
        return DESCRIPTIONS.get(self.code, self.code.name)

