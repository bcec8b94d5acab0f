"""A typed job: the payload is a msgspec Struct, validated at enqueue, and the handler
receives the Struct. The job record keeps who created it and its full history.

Run: python examples/training_job.py
"""

from __future__ import annotations

from typing import Any, Literal

import anyio
import msgspec

from conveyor import Queue, Runtime, ValidationError, current_job


class TrainingPayload(msgspec.Struct):
    data_id: str
    algo: Literal["random-forest", "mlp"]
    params: dict[str, Any] = {}


def get_data(data_id: str) -> dict[str, Any]:
    return {"data_id": data_id, "rows": 100}


class TrainingQueue(Queue[TrainingPayload]):
    name = "training"

    async def handle_item(self, item: TrainingPayload) -> dict[str, Any]:
        self.report_progress(0, message=f"started for {current_job().created_by}")
        data = get_data(item.data_id)
        epochs = int(item.params.get("epochs", 5))
        for epoch in range(1, epochs + 1):
            self.check_cancelled()
            await anyio.sleep(0.05)  # one epoch
            self.report_progress(current=epoch, total=epochs, message=f"epoch {epoch}")
        return {"model_id": f"{item.algo}-model-1", "rows": data["rows"]}


async def main() -> None:
    async with Runtime("examples.db", queues=[TrainingQueue()]) as rt:
        job = await rt.enqueue(
            "training",
            TrainingPayload(data_id="data:1", algo="random-forest", params={"epochs": 5}),
            created_by="alice",
        )
        print("job submitted:", job.id)
        try:
            await rt.enqueue("training", {"data_id": "data:2", "algo": "svm"})
        except ValidationError as exc:
            print("refused:", exc)
        done = await rt.wait(job.id, timeout=30)
        print("status:", done.status.value, "result:", done.result)
        for entry in await rt.history(job.id):
            print(f"  {entry.at:%H:%M:%S.%f} {entry.status.value:<9} {entry.message or ''}")


if __name__ == "__main__":
    anyio.run(main)
