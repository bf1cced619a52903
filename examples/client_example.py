"""Predict a weekend with the typed client. Start the server first: `make serve`.

.venv/bin/python examples/client_example.py [http://localhost:3000]

With no server answering it says so in one line and exits with status 1.
"""

from __future__ import annotations

import sys

from pipelines.client import F1APIError, F1Client, F1ConnectionError


def main(url: str = "http://localhost:3000") -> None:
    with F1Client(url) as f1:
        # An event in the data: entry list and pre-qualifying practice come from the data.
        full = f1.predict_full({"event": {"season": 2025, "round": 8}})
        print(f"{full.metadata.event} models={full.metadata.model_versions}")
        for q in full.qualifying_predictions[:5]:
            print(
                f"  P{q.grid_position_estimate:<2} {q.driver_name or q.driver_id:<20} "
                f"{q.predicted_time} s"
            )
        for r in full.race_winner_predictions[:3]:
            print(
                f"  win {r.win_probability:6.1%} podium {r.podium_probability:6.1%} "
                f"points {r.points_probability:6.1%} {r.driver_name or r.driver_id}"
            )

        # Why? "explain": true adds each driver's largest feature contributions.
        race = f1.predict_race({"event": {"season": 2025, "round": 8}, "explain": True})
        why = race[0].explanation
        if why is not None:
            print(f"  {race[0].driver_name}: base {why.base:+.2f} {why.unit}")
            for c in why.contributions:
                print(f"    {c.value:+.2f}  {c.label}")

        # Your own field, at an event that is not in the data.
        quali = f1.predict_quali(
            {
                "event": {"season": 2026, "circuit_id": "monaco", "date": "2026-06-07"},
                "drivers": [
                    {"driver_id": "max-verstappen", "practice": {"fp3": "1:11.2"}},
                    {"driver_id": "lando-norris", "practice": {"fp3": 71.05}},
                ],
            }
        )
        print([(q.driver_id, q.grid_position_estimate) for q in quali])

        # Bad input comes back as F1APIError naming the field.
        try:
            f1.predict_race({"event": {"season": 2025, "round": 29}})
        except F1APIError as err:
            print(err.status, err.detail[0]["loc"], err.detail[0]["msg"])


if __name__ == "__main__":
    try:
        main(*sys.argv[1:2])
    except F1ConnectionError as exc:
        sys.exit(str(exc))
