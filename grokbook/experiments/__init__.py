"""The experiments layer: between the analysis library and the chapters.

- :mod:`~grokbook.experiments.thresholds`: the one set of phase thresholds (the
  authors' 5% and 99% and one delay ratio) and each chapter's registered departures;
- :mod:`~grokbook.experiments.verdicts`: the shared verdict rules (seeds against
  matched controls, a decision from an interval, "not testable"), pure functions of
  measured values;
- :mod:`~grokbook.experiments.records`: the offline runs, one compact record each;
- :mod:`~grokbook.experiments.central`: the central claim against the hyperparameters
  (chapters 2 and 9);
- :mod:`~grokbook.experiments.book_grid`: the book's shared seeded sweep (chapters 2
  and 9) and the default predictor fitted on it;
- :mod:`~grokbook.experiments.search`: chapter 11's search harness (a real Optuna study
  replayed from stored runs);
- :mod:`~grokbook.experiments.paper`: each chapter's parameters against the paper's;
- :mod:`~grokbook.experiments.leaderboard`: chapter 12's corpus and its held-out scores;
  :mod:`~grokbook.experiments.peer`: another public trainer (not grokbook's) whose
  curves chapter 12 scores the shipped predictors on;
  :mod:`~grokbook.experiments.sharpness`: the Hessian's extremes at the end of each corpus
  run's early window, measured offline on a replay (``data/sharpness/``);
- :mod:`~grokbook.experiments.parameters`: a chapter's parameters as one dataclass;
- one module per chapter moved into this layer: :mod:`~grokbook.experiments.valleys`
  (chapter 5), :mod:`~grokbook.experiments.trajectory` (chapter 6),
  :mod:`~grokbook.experiments.hessian` (chapter 7), :mod:`~grokbook.experiments.data_fraction`
  (chapter 10): their measurements, verdicts (the registered one as registered, and the
  second test on fresh seeds) and the offline pool's tables (``data/pool/``).
"""
