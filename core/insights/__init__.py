"""Why, and which version: what drives each sentiment, what the posts talk about, and how two head
versions differ on the same posts.

- ``drivers``   terms most associated with each class or slice (weighted log-odds, informative prior)
- ``themes``    posts grouped into themes from stored text features (k-means), named by c-TF-IDF
  (``ctfidf``), kept with the run (``theme_store``)
- ``compare``   agreement, the version-against-version matrix, accuracies and McNemar's test
- ``rescore``   a run scored again by other head versions from the feature store (heads only)
- ``features``  a run's vectors read back from the feature store; ``tokens``: how posts become terms

The functions take plain inputs (texts, classes, labels, dates, vectors) so that the analysis page,
the command line and the tests share them. On a saved run (``core.runs``), with the analysis page's
filters (``core.analysis.Filters``):

- ``run_posts``    the filtered posts, read once by the analysis engine's WHERE clause
- ``run_drivers``  drivers per predicted or labelled class, two values of a column, a period against the last
- ``run_themes``   the run's themes found once, kept in its folder, counted over the filtered posts
- ``run_compare``  two head versions on the filtered posts, with the changed posts listed
"""
