package learnosity.examples.streams;

import java.util.Map;
import java.util.TreeMap;

/**
 * One learner's sessions, from the latest state of each: what the learners topic carries
 * (JSON, keyed by user_id). Maintained by a KTable aggregation: a session's new state is
 * added and its previous state subtracted, so a status change moves it between counts.
 *
 * @param completedScore the sum of the scores of the learner's Completed sessions
 * @param completedMaxScore the sum of their max scores
 */
public record LearnerSummary(
        String userId,
        long sessions,
        long completedSessions,
        Map<String, Long> sessionsByStatus,
        double completedScore,
        double completedMaxScore) {

    static LearnerSummary empty() {
        return new LearnerSummary(null, 0, 0, Map.of(), 0.0, 0.0);
    }

    LearnerSummary add(SessionLatest session) {
        return change(session, 1);
    }

    LearnerSummary subtract(SessionLatest session) {
        return change(session, -1);
    }

    private LearnerSummary change(SessionLatest session, int sign) {
        boolean completed = "Completed".equals(session.status());
        Map<String, Long> byStatus = new TreeMap<>(sessionsByStatus);
        byStatus.merge(String.valueOf(session.status()), (long) sign, Long::sum);
        byStatus.values().removeIf(count -> count == 0);
        return new LearnerSummary(
                session.userId(),
                sessions + sign,
                completedSessions + (completed ? sign : 0),
                byStatus,
                completedScore + (completed ? sign * orZero(session.score()) : 0.0),
                completedMaxScore + (completed ? sign * orZero(session.maxScore()) : 0.0));
    }

    private static double orZero(Double value) {
        return value == null ? 0.0 : value;
    }
}
