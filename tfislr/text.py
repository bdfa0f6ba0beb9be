"""Words of the messages users read (ground floor: no tfislr imports)."""


def plural(count, noun, plural_noun=None):
    """"1 checkpoint", "2 checkpoints", "0 clips": `count` and `noun` in the number it takes.

    `plural_noun` is the plural when it is not `noun + "s"` (e.g. "replicas" is regular,
    "indices" is not). `count` is an int; it prints with thousands separators ("1,024").
    """
    word = noun if count == 1 else (plural_noun or noun + "s")
    return f"{count:,} {word}"
