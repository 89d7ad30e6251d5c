"""Avatar names: each avatar is the Triton model `avatar_<name>`, and its name becomes a folder
name on the server, so client and server check it by the same rule."""

import re

from .messages import quoted

MODEL_PREFIX = "avatar_"
NAME_RULE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class AvatarNameError(ValueError):
    pass


def check_name(name: str) -> str:
    """Avatar names become folder names: allow only a safe, short alphabet."""
    if not NAME_RULE.fullmatch(name):
        raise AvatarNameError(
            f"invalid avatar name {quoted(name)}: use 1-63 characters from a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def name_list(text: str) -> frozenset[str]:
    """The avatars of a comma-separated list (a config parameter such as pinned_avatars), each
    checked."""
    return frozenset(check_name(name.strip()) for name in text.split(",") if name.strip())


def model_name(avatar: str) -> str:
    return MODEL_PREFIX + check_name(avatar)


def avatar_name(model: str) -> str | None:
    """The avatar served by a Triton model, or None for the pipeline's own models."""
    return model[len(MODEL_PREFIX) :] if model.startswith(MODEL_PREFIX) else None
