package learnosity.examples.streams;

import java.time.Instant;
import org.apache.avro.generic.GenericRecord;

/** Reads the connector's event (record learnosity.scores.SessionScoreChanged) by field name. */
final class Events {
    private Events() {}

    static String string(GenericRecord event, String field) {
        Object value = value(event, field);
        return value == null ? null : value.toString(); // Avro strings are Utf8 by default
    }

    static Double number(GenericRecord event, String field) {
        Object value = value(event, field);
        return value == null ? null : ((Number) value).doubleValue();
    }

    /**
     * A timestamp-millis field as epoch milliseconds, or null. Generic readers give the long
     * itself; a reader with Avro's TimeConversions gives an Instant; both are accepted.
     */
    static Long epochMillis(GenericRecord event, String field) {
        Object value = value(event, field);
        if (value == null) {
            return null;
        }
        if (value instanceof Long millis) {
            return millis;
        }
        if (value instanceof Instant instant) {
            return instant.toEpochMilli();
        }
        throw new IllegalArgumentException(field + " is a " + value.getClass().getName());
    }

    private static Object value(GenericRecord event, String field) {
        return event.hasField(field) ? event.get(field) : null;
    }
}
