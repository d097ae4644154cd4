"""The deterministic merge rules of DESIGN section 4: a validated request applied to the current page."""

from __future__ import annotations

from dataclasses import dataclass

from ..journal import WriteRequest, merge_fields
from ..pages import TYPE_POLICIES, Fields, Page, PageType, Provenance, Representation
from ..represent import build_representations, derive_fields, derive_title
from ..tokens import TokenCounter


def floor_tokens(page: Page) -> int:
    """Tokens of the cheapest form that meets the page's floor."""
    return page.tokens_at(page.at_least(page.min_fidelity))


@dataclass(frozen=True, slots=True)
class PageMerger:
    """Applies a validated request to the current page: the deterministic merge rules of DESIGN section 4."""

    counter: TokenCounter
    turn: int
    committed_version: int

    def __call__(self, req: WriteRequest, current: Page | None) -> Page:
        live = current if current is not None and not current.deleted else None
        page_type: PageType = req.type or (live.type if live else "conversation")  # type: ignore[assignment]
        policy = TYPE_POLICIES[page_type]
        if live is None:
            content, explicit = req.content or "", dict(req.fields or {})
        elif req.op == "append":
            content = live.content + ("\n" + req.content if req.content else "")
            explicit = merge_fields(live.explicit_fields, live.fields, req.fields or {}, "append")
        elif req.op == "merge":
            content, explicit = live.content, merge_fields(live.explicit_fields, live.fields, req.fields or {}, "merge")
        elif req.op == "set":
            content = req.content if req.content is not None else live.content
            explicit = dict(req.fields) if req.fields is not None else dict(live.explicit_fields)
        else:
            content, explicit = live.content, dict(live.explicit_fields)
        fields: Fields = {**derive_fields(page_type, req.page_id, content), **explicit}
        title = str(fields.get("title") or "") if page_type == "bootstrap" else ""
        title = title or derive_title(content, req.page_id)
        pin = req.pin or (live.pin if live else policy.default_pin)
        prov = req.provenance or (live.provenance if live else Provenance("harness", "ext:unknown", self.turn))
        reps = build_representations(
            self.counter,
            page_id=req.page_id,
            page_type=page_type,
            version=self.committed_version + 1,
            title=title,
            content=content,
            fields=fields,
        )
        if req.tokens:  # a replay trace's prescribed sizes; the texts stay the derived ones
            reps = {lv: Representation(r.text, req.tokens.get(lv.label, r.tokens)) for lv, r in reps.items()}
        return Page(
            page_id=req.page_id,
            type=page_type,
            scope=req.scope or (live.scope if live else policy.default_scope),
            pin=pin,
            min_fidelity=policy.min_fidelity,
            version=self.committed_version,
            provenance=prov,
            content=content,
            fields=fields,
            explicit_fields=explicit,
            representations=reps,
            recompute_cost=live.recompute_cost if live else policy.recompute_cost,
            base_utility=live.base_utility if live else policy.base_utility,
            created_turn=live.created_turn if live else self.turn,
            last_access_turn=self.turn,
            title=title,
        )
