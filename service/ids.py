"""Object ids in the prefixes clients expect (`resp_`, `msg_`, `chatcmpl-`, `file-`, …)."""
import secrets


def new_id(prefix: str, sep: str = "_", nbytes: int = 12) -> str:
    """A random id such as `resp_3f2a…` (sep "-" for `chatcmpl-…` and `file-…`)."""
    return f"{prefix}{sep}{secrets.token_hex(nbytes)}"
