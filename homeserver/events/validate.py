# TEMPORARY until the events branch merges (replaced wholesale).
import re
def is_valid_server_name(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9a-fA-F:.]+\](:\d{1,5})?", name))
def is_valid_localpart(localpart: str, strict: bool = True) -> bool:
    return bool(re.fullmatch(r"[a-z0-9._=\-/+]+", localpart))
