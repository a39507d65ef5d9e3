"""Bridges to other frameworks, each in its own module and each behind its own extra.

Nothing here is imported by Docket itself (an import-linter contract in pyproject.toml keeps
it so), so ``import docket`` never pulls a framework in: ``docket.integrations.faust`` needs
``pip install 'docket-engine[faust]'``.
"""
