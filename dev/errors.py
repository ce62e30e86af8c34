"""The one error the local stack raises: something a developer must fix, said plainly."""


class StackError(RuntimeError):
    """The local Kafka broker or schema registry could not be fetched, started or reached.

    The message names what is wrong and what to do; callers print it and fail (tests never
    skip on it: a missing Java or Maven is a broken machine, not an optional feature).
    """
