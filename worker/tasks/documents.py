"""Example tasks: a document split into chunks, each embedded by a child job, then indexed.

`split_pdf` spawns one `embed_chunk` per chunk and one `build_index` that depends on all
of them: the index is built once every chunk is embedded, released by the database in the
transaction that records the last embedding, with no job polling for it. Submitted in a
batch (`POST /batches`), the children join the batch and its one progress bar.
"""

from __future__ import annotations

import asyncio
import hashlib

from tidings.worker import Job, task

# How long a stand-in embedding takes: long enough to watch a batch move.
EMBED_S = 0.2


@task(timeout=600)
async def split_pdf(job: Job, document: str, chunks: int = 8) -> dict[str, object]:
    """Split `document` into `chunks` parts; embed each in a child job, then index them."""
    embeds = []
    for chunk in range(chunks):
        embeds.append(await job.spawn("embed_chunk", {"document": document, "chunk": chunk}))
        await job.progress(chunk + 1, chunks, f"spawned {chunk + 1} of {chunks} embeddings")
    index = await job.spawn("build_index", {"document": document}, depends_on=embeds)
    return {"embeddings": embeds, "index": index}


@task
async def embed_chunk(job: Job, document: str, chunk: int) -> dict[str, object]:
    """A stand-in embedding of one chunk: a small vector drawn from its text's digest."""
    await asyncio.sleep(EMBED_S)
    digest = hashlib.sha256(f"{document}:{chunk}".encode()).digest()
    return {"chunk": chunk, "vector": [round(byte / 255, 4) for byte in digest[:4]]}


@task
async def build_index(job: Job, document: str) -> dict[str, object]:
    """Index every embedding of `document`: the results of the jobs this one depends on."""
    embeddings = await job.dependency_results()
    chunks = sorted(result["chunk"] for result in embeddings.values())
    return {
        "document": document,
        "chunks": len(chunks),
        "complete": chunks == list(range(len(chunks))),
    }
