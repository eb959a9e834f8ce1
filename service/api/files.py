"""OpenAI Files, kept in the key's own space of the file repository (ONEKEYLLM_FILES_DIR)."""
from __future__ import annotations

import marshmallow as ma
from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest.fields import Upload
from marshmallow import fields
from werkzeug.routing import PathConverter

from ..accounts.auth import require_key
from ..config import Settings
from ..http.downloads import attachment_headers
from ..storage import files
from ..storage.models import StoredFile
from .blueprint import Blueprint
from .pagination import list_page
from .schemas import ListArgsSchema

MULTIPART_SLACK = 64 * 1024
blp = Blueprint("files", __name__, url_prefix="/v1", description="OpenAI Files and the per-key file repository")


class FilePathConverter(PathConverter):
    """Everything after `/v1/files/`, leading slashes and dots included, so that bad paths get a 400, not a 404."""

    regex = r"[\s\S]+?"
    part_isolating = False


blp.record_once(lambda state: state.app.url_map.converters.setdefault("filepath", FilePathConverter))


class UploadFileSchema(ma.Schema):
    file = Upload(required=True)


class UploadFormSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    purpose = fields.String(required=True, validate=ma.validate.OneOf(files.PURPOSES))


class UploadSchema(UploadFormSchema):
    """The whole multipart body, for the document (webargs reads its parts from two locations)."""

    file = Upload(required=True)


class FileListArgsSchema(ListArgsSchema):
    limit = fields.Integer(load_default=10000, validate=ma.validate.Range(min=1, max=10000))
    purpose = fields.String(load_default=None)


class FileObjectSchema(ma.Schema):
    id = fields.String()
    object = fields.String()
    bytes = fields.Integer()
    created_at = fields.Integer()
    filename = fields.String()
    purpose = fields.String()
    status = fields.String()
    expires_at = fields.Integer(allow_none=True)
    status_details = fields.String(allow_none=True)


class FileListSchema(ma.Schema):
    object = fields.String()
    data = fields.List(fields.Nested(FileObjectSchema))
    first_id = fields.String(allow_none=True)
    last_id = fields.String(allow_none=True)
    has_more = fields.Boolean()


class FileDeletedSchema(ma.Schema):
    id = fields.String()
    object = fields.String()
    deleted = fields.Boolean()


def _settings() -> Settings:
    return current_app.extensions["onekeyllm"].settings


def _repository() -> files.FileStore:
    return files.store_for(_settings())


@blp.before_request
def _key_required():
    require_key()  # before any body is read
    if request.method in ("POST", "PUT"):
        # MAX_CONTENT_LENGTH is sized for JSON. The file itself is counted against the limit as it is
        # written; this bound only stops bodies that cannot fit (werkzeug refuses a read *at* its bound,
        # hence the margin: one byte for PUT, the multipart framing for POST).
        request.max_content_length = _settings().max_file_bytes + (1 if request.method == "PUT" else MULTIPART_SLACK)


@blp.route("/files")
class Files(MethodView):
    @blp.arguments(UploadFormSchema, location="form")
    @blp.arguments(UploadFileSchema, location="files")
    @blp.response(200, FileObjectSchema)
    @blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": UploadSchema}}},
             parameters=[])
    def post(self, form, upload):
        """Upload a file (multipart `file` and `purpose`)."""
        key = require_key()
        storage = upload["file"]
        row = files.store_upload(_repository(), key.id, storage.stream, storage.filename, form["purpose"],
                                 storage.mimetype, _settings().max_file_bytes)
        return files.file_object(row)

    @blp.arguments(FileListArgsSchema, location="query")
    @blp.response(200, FileListSchema)
    def get(self, args):
        """The key's files, newest first unless `order=asc`, optionally of one `purpose`."""
        query = StoredFile.select().where(StoredFile.key_id == require_key().id)
        if args.get("purpose"):
            query = query.where(StoredFile.purpose == args["purpose"])
        return list_page(query, StoredFile, args, files.file_object)


@blp.route("/files/<file_id>")
class FileResource(MethodView):
    @blp.response(200, FileObjectSchema)
    def get(self, file_id):
        """One file of the calling key."""
        return files.file_object(files.get_file(file_id, require_key().id))

    @blp.response(200, FileDeletedSchema)
    def delete(self, file_id):
        """Delete a file, from disk too."""
        return files.delete_file(_repository(), files.get_file(file_id, require_key().id))


@blp.route("/files/<file_id>/content")
class FileContent(MethodView):
    @blp.doc(responses={"200": {"description": "The file's bytes, with the media type it was stored with",
                                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}})
    def get(self, file_id):
        """The file's raw bytes, streamed from disk, always as a download (attachment, nosniff, sandboxed)."""
        row = files.get_file(file_id, require_key().id)
        stream = files.open_content(_repository(), row)

        def chunks():
            with stream:
                yield from files.read_chunks(stream)

        size = files.content_size(stream)
        return Response(chunks(), mimetype=files.download_type(row), direct_passthrough=True,
                        headers={"Content-Length": str(size), **attachment_headers(row.filename)})


@blp.route("/files/<filepath:path>", merge_slashes=False)
class FileAtPath(MethodView):
    @blp.doc(requestBody={"required": True, "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}})
    @blp.response(200, FileObjectSchema)
    def put(self, path):
        """Store the request body at `path` in the key's file space, streamed to disk."""
        key = require_key()
        settings = _settings()
        row = files.store_at_path(_repository(), key.id, path, request.stream, request.mimetype or None,
                                  settings.max_file_bytes)
        return files.file_object(row)
