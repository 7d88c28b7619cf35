"""Orchestration of `stylegan_core` with Dagster: dataset specs become asset groups, checks, schedules and sensors.

Everything heavy happens in `stylegan_core`; this package only resolves a spec and a partition, calls the core (or
launches it out of process through Dagster Pipes) and turns the results into metadata.
"""
