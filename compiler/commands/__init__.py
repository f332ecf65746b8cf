"""The ``lmhtc`` commands, one module per small family (compiler/cli.py registers them on the app).

Invariant: a command module parses and checks its flags, calls the pipeline (compiler/pipeline.py, the
same functions the Python API calls) and prints through compiler/presentation.py; the policy of what
a flag means lives in the pipeline, not here. Shared options and the error rule are in common.py.
"""
