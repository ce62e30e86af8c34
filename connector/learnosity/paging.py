"""What every page request carries: ``sort: asc``, the page ``limit`` and the filters. Pure.

The window of a request (``mintime``/``maxtime``/``next``) is its lane's
(``connector.catchup.lanes``). The service returns ``next`` on every non-empty page,
whether or not more exist, so the end of the data is an *empty* page (a partial page
says the same one request sooner); the same filters and ``sort`` go with every token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.settings import Settings


@dataclass(frozen=True)
class Filters:
    activity_ids: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    include_response_scores: bool = False

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.activity_ids:
            params["activity_id"] = list(self.activity_ids)
        if self.user_ids:
            params["user_id"] = list(self.user_ids)
        if self.statuses:
            params["status"] = list(self.statuses)
        if self.include_response_scores:
            params["include_response_scores"] = True
        return params

    @classmethod
    def from_settings(cls, settings: Settings) -> Filters:
        return cls(
            activity_ids=tuple(settings.learnosity_activity_ids),
            user_ids=tuple(settings.learnosity_user_ids),
            statuses=tuple(settings.learnosity_statuses),
            include_response_scores=settings.learnosity_include_response_scores,
        )


def base_params(settings: Settings) -> dict[str, Any]:
    """The parameters every request of this connector carries."""
    return {
        "sort": "asc",
        "limit": settings.learnosity_page_limit,
        **Filters.from_settings(settings).params(),
    }
