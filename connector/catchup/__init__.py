"""Catching up by time slices: many ``next`` cursors at once, under one request budget.

lanes     one cursor's persisted state (the live tail, or a slice of updated time)
planner   where the slices go, which one to split, how long the rest will take; pure
crawl     the fetch side's scheduler: worker threads paging lanes concurrently
"""
