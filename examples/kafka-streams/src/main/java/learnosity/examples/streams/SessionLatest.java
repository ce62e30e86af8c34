package learnosity.examples.streams;

import org.apache.avro.generic.GenericRecord;

/**
 * The latest state of one session, by event time: what the sessions KTable holds and the
 * latest-sessions topic carries (JSON, keyed by session_id).
 *
 * @param changes the events this session's state was built from
 */
public record SessionLatest(
        String sessionId,
        String userId,
        String activityId,
        String status,
        Double score,
        Double maxScore,
        Long dtUpdated,
        String lastChange,
        String lastEventId,
        long changes) {

    /** One event as a session state, counting one change. */
    static SessionLatest first(GenericRecord event) {
        return of(event, 1);
    }

    /**
     * The reducer: the state of the newer event by dt_updated. An event older than the state
     * (possible only when events of one session were reordered) is counted, not applied.
     */
    SessionLatest then(SessionLatest next) {
        boolean older = next.dtUpdated != null && dtUpdated != null && next.dtUpdated < dtUpdated;
        SessionLatest latest = older ? this : next;
        return new SessionLatest(latest.sessionId, latest.userId, latest.activityId, latest.status,
                latest.score, latest.maxScore, latest.dtUpdated, latest.lastChange, latest.lastEventId,
                changes + next.changes);
    }

    private static SessionLatest of(GenericRecord event, long changes) {
        return new SessionLatest(
                Events.string(event, "session_id"),
                Events.string(event, "user_id"),
                Events.string(event, "activity_id"),
                Events.string(event, "status"),
                Events.number(event, "score"),
                Events.number(event, "max_score"),
                Events.epochMillis(event, "dt_updated"),
                Events.string(event, "change"),
                Events.string(event, "event_id"),
                changes);
    }
}
