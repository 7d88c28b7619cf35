"""A Pipes subprocess client that owns a whole process tree (torchrun and its workers).

Dagster's `PipesSubprocessClient` sends SIGINT to the process it started and then only waits. A torchrun launch is a
tree: the agent plus one worker per GPU. To make a cancelled run leave nothing behind, the tree gets its own process
group: cancellation sends SIGINT to torchrun (which forwards it, so workers can stop at the next tick), and whatever
is still alive after `termination_timeout_seconds` is SIGKILLed as a group. On Linux the tree also receives SIGTERM if
the orchestrating process dies without cleaning up (parent-death signal).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence

import dagster as dg

_PR_SET_PDEATHSIG = 1


def prepare_child_process() -> None:
    # Runs in the child between fork and exec. Servers started from non-interactive shells can inherit SIGINT/SIGTERM
    # as ignored; reset them so forwarded signals work.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ProcessGroupPipesClient(dg.PipesSubprocessClient):
    """`PipesSubprocessClient` whose command runs in its own session; cancellation stops the whole group."""

    def run(  # type: ignore[override]
        self,
        *,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        command: Sequence[str],
        extras: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        with dg.open_pipes_session(
            context=context,
            context_injector=self.context_injector,
            message_reader=self.message_reader,
            extras=extras,
        ) as session:
            process = subprocess.Popen(
                list(command),
                cwd=cwd or self.cwd,
                env={**os.environ, **self.env, **(env or {}), **session.get_bootstrap_env_vars()},
                preexec_fn=prepare_child_process,
                start_new_session=True,
            )
            try:
                return_code = process.wait()
            except BaseException:
                # Interrupted (run cancelled, SIGTERM to the run worker) or any error while waiting.
                if self.forward_termination:
                    context.log.info("[pipes] run interrupted: stopping the training process tree")
                    stop_process_group(process, self.termination_timeout_seconds)
                raise
            if return_code != 0:
                raise dg.Failure(
                    description=f"training process exited with code {return_code}; "
                    "see the step's stderr for the workers' output"
                )
        return dg.PipesClientCompletedInvocation(session)


def stop_process_group(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGINT to the group leader, wait, then SIGKILL to every process left in its group."""
    try:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=timeout_s)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is already gone
    process.wait()
