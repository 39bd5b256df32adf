"""Reading back the seed's text table, as the seed does to skip the files it lists."""


def read_processed_from_seed_table(path):
    """The files listed in an existing seed table (the seed skips them unless ``-a``).

    Parameters
    ----------
    path : str or os.PathLike
        The table; a missing file lists nothing.

    Returns
    -------
    set of str
        The first whitespace-separated token of every data line (the header line, starting with
        ``filename``, and the dashes line are left out).
    """
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return set()
    processed = set()
    for line in lines:
        tokens = line.split()
        if not tokens or tokens[0] == "filename" or set(tokens[0]) == {"-"}:
            continue
        processed.add(tokens[0])
    return processed
