"""Keep diffusers'/transformers' own console output out of brushwork's: bars and notices, for a while.

brushwork reports its own progress and errors; a program using the API should
not get library progress bars or notices on stderr for every model load.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_dtype_notice() -> Iterator[None]:
    """diffusers 0.42's from_pipe logs "modules that should be kept in float32: []" for every module; hide it."""
    import logging

    logger = logging.getLogger("diffusers.models.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def quiet_library_bars() -> Iterator[None]:
    """Hide diffusers'/transformers' own loading bars for the duration, then restore them.

    brushwork reports its own progress; a program using the API should not get
    library progress bars on stderr for every model load.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, transformers_logging)
    were_enabled = [lib.is_progress_bar_enabled() for lib in libraries]
    for lib in libraries:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, enabled in zip(libraries, were_enabled, strict=True):
            if enabled:
                lib.enable_progress_bar()
