"""Pydantic models of the HTTP boundary, one module per router (`backend.schemas.jobs`, ...).

Only the HTTP layer uses them: the job manager, the registry and twm_core work with dataclasses.
"""
