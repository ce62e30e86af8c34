package learnosity.examples.streams;

import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * Event time is the session's dt_updated (timestamp-millis), not the Kafka record's time:
 * a backfill publishes a year of changes within minutes. dt_updated is null only when the
 * API sent no updated time; then the connector's observed_at, then the partition's time.
 */
public final class DtUpdatedTimestampExtractor implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
        if (record.value() instanceof GenericRecord event) {
            Long updated = Events.epochMillis(event, "dt_updated");
            if (updated != null) {
                return updated;
            }
            Long observed = Events.epochMillis(event, "observed_at");
            if (observed != null) {
                return observed;
            }
        }
        return partitionTime >= 0 ? partitionTime : record.timestamp();
    }
}
