"""`sparkserve pull [SERVICE]`: fetch each service's model before `up`, with progress, resumable."""

from __future__ import annotations

from sparkserve.errors import UserError


def run_pull(*, stack: str | None, services: list[str]) -> None:
    from rich.console import Console

    from sparkserve.engines import get_engine
    from sparkserve.stack.stackplan import load_planned

    console = Console(highlight=False)
    loaded = load_planned(stack)
    names = services or list(loaded.stack.services)
    unknown = [n for n in names if n not in loaded.stack.services]
    if unknown:
        import difflib

        guess = difflib.get_close_matches(unknown[0], list(loaded.stack.services), n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else f"; services: {', '.join(loaded.stack.services)}"
        raise UserError(f"no service {unknown[0]!r} in {loaded.path}{hint}")
    for name in names:
        svc = loaded.stack.services[name]
        engine = get_engine(svc.engine)
        if engine.hub_download_patterns([]) is not None:
            _pull_hub(loaded, name, svc, engine, console)
        else:
            _pull_server(loaded, name, svc, engine, console)


def _pull_hub(loaded, name: str, svc, engine, console) -> None:
    from sparkserve.runtime import pull

    if pull.is_local(svc.model):
        console.print(f"{name}: {svc.model} is a local directory; nothing to download")
        return
    revision = svc.args.get("revision")
    cache = pull.hf_hub_cache(loaded.stack, svc)
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

    console.print(f"{name}: downloading {svc.model}{f' at {revision}' if revision else ''} into {cache} "
                  "(an interrupted download resumes where it stopped)", markup=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console) as bars:
        tasks: dict[str, TaskID] = {}

        def progress(path: str, done: int, total: int) -> None:
            if path not in tasks:
                tasks[path] = bars.add_task(f"{name}: {path}", total=total)
            bars.update(tasks[path], completed=done)

        folder, size = pull.pull_hub(engine, svc.model, revision=str(revision) if revision else None, cache_dir=cache,
                                     token=pull.hub_token(loaded.path.parent), progress=progress)
    console.print(f"[green]pulled[/] {name}: {svc.model} ({size / 1024**3:.2f} GiB) in {folder}")


def _pull_server(loaded, name: str, svc, engine, console) -> None:
    import httpx
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

    from sparkserve.runtime.native import service_url

    url = service_url(loaded.stack.spec.stack.bind, svc.port)
    console.print(f"{name}: asking {engine.label or engine.name} at {url} to pull {svc.model}", markup=False)
    with httpx.Client(base_url=url, timeout=httpx.Timeout(30.0, read=None), trust_env=False) as client, \
            Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                     console=console, transient=False) as bars:
        tasks: dict[str, TaskID] = {}

        def progress(status: str, completed: int, total: int) -> None:
            if total:
                if status not in tasks:
                    tasks[status] = bars.add_task(f"{name}: {status}", total=total)
                bars.update(tasks[status], completed=completed, total=total)
            else:
                bars.console.print(f"{name}: {status}", markup=False)

        try:
            engine.pull_from_server(client, name=name, model=svc.model, progress=progress)
        except httpx.TransportError as exc:
            raise UserError(f"{name}: {engine.label or engine.name} does not answer at {url} ({type(exc).__name__}); "
                            f"start it first ('sparkserve up {name} --no-wait'), then pull") from None
    console.print(f"[green]pulled[/] {name}: {svc.model}")
