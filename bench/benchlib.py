"""What the bench scripts share: printing a result and appending it to a Markdown file."""


def publish(text, path=None):
    """Print a Markdown section; with path, append it there too (docs/benchmarks.md)."""
    print(text)
    if path:
        with open(path, "a") as handle:
            handle.write("\n" + text)
