"""Wire-format codecs: each module converts one API format to and from the canonical turn.

Every codec module offers the same surface:
  parse_request(body) -> canonical.Request           (raises CodecError on a bad body)
  render_request(request, upstream_model) -> dict     (the upstream body)
  parse_response(body) -> canonical.Response
  render_response(response, ctx) -> dict
  StreamParser().feed(event_name, data) -> [StreamEvent];  .close() -> [StreamEvent]
  StreamRenderer(ctx).feed(StreamEvent) -> [(event_name | None, payload)];  .close();  .fail(message, error_type)
A payload is a dict to be sent as JSON, or a str sent as is (Chat's "[DONE]").
"""


class CodecError(ValueError):
    """A request body that the format does not allow; becomes a 400."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
