"""An example of your own task module: the image copies deploy/app/ to /app, where
`tidings worker` imports the modules named in TIDINGS_TASKS."""

from tidings.worker import Job, task


@task(timeout=60)
async def greet(job: Job, name: str) -> dict[str, str]:
    """Say hello, in two reported steps."""
    await job.progress(1, 2, "composing")
    text = f"hello, {name}"
    await job.progress(2, 2, "composed")
    return {"text": text}
