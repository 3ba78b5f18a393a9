"""The untouched base: installs nothing."""

from tools.matrix.variants import Variant


class Base(Variant):
    """The API untouched."""

    entry_points = ()
