"""The static leaderboard: ``rootbench site`` builds it from ``runs/`` (see ``leaderboard/README.md``)."""
