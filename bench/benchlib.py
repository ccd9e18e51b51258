"""What the bench scripts share: printing a result and appending it to a Markdown file."""


def publish(text, path=None):
    """Print a Markdown section; with path, append it there too (docs/benchmarks.md)."""
    print(text)
    if path:
        with open(path, "a") as handle:
            handle.write("\n" + text)


# The end of every MLflow program the benches run (in another Python): the median
# time of search_runs over the experiment's `count` runs, `repeats` times, as JSON.
MLFLOW_SEARCH_MEDIAN = r'''
def search():
    start = time.perf_counter()
    runs = mlflow.search_runs(experiment_ids=[experiment], max_results=count * 2)
    assert len(runs) == count, len(runs)
    return time.perf_counter() - start
search()
print(json.dumps({"version": mlflow.__version__, "median": statistics.median(search() for _ in range(repeats))}))
'''
