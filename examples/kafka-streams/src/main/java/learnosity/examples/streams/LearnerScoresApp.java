package learnosity.examples.streams;

import io.apicurio.registry.serde.avro.AvroKafkaDeserializer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads the connector's events topic (key: user_id, value: SessionScoreChanged in Avro),
 * with event time from dt_updated, and keeps two tables:
 *
 * <ul>
 *   <li>the latest state of each session (by dt_updated), written to the sessions topic
 *       keyed by session_id;
 *   <li>per learner: sessions, completed sessions, sessions by status and the completed
 *       sessions' score totals, written to the learners topic keyed by user_id.
 * </ul>
 *
 * Both outputs are JSON and compacted. Run with -h for the options.
 */
public final class LearnerScoresApp {
    private static final Logger LOG = LoggerFactory.getLogger(LearnerScoresApp.class);

    static final String USAGE = """
            usage: LearnerScoresApp [options]   (each option also reads the environment variable shown)
              --bootstrap-servers H:P   KAFKA_BOOTSTRAP_SERVERS   (required)
              --input-topic T           KAFKA_TOPIC               the connector's events (default learnosity.sessions.scores)
              --sessions-topic T        SESSIONS_TOPIC            latest state per session (default <input>.latest-sessions)
              --learners-topic T        LEARNERS_TOPIC            per-learner summary (default <input>.learners)
              --encoding E              VALUE_ENCODING            registry | single-object (default: registry when a
                                                                  registry URL is set, else single-object)
              --registry-url URL        SCHEMA_REGISTRY_URL       Apicurio Registry: its ccompat URL (.../apis/ccompat/v7),
                                                                  its v3 API URL or its root
              --schema-dir DIR          AVRO_SCHEMA_DIR           the session_score_changed.v*.avsc files (default avro)
              --application-id ID       APPLICATION_ID            (default learnosity-learner-scores)
              --state-dir DIR           STATE_DIR                 local state stores (default: Kafka Streams' own)
              --property K=V                                      any Kafka Streams or client setting (repeatable)
            """;

    private LearnerScoresApp() {}

    /** The options, from flags first, then the environment, then the defaults. */
    record Options(
            String bootstrapServers,
            String inputTopic,
            String sessionsTopic,
            String learnersTopic,
            String encoding,
            String registryUrl,
            Path schemaDir,
            String applicationId,
            String stateDir,
            Map<String, String> properties) {

        static Options parse(String[] args, Map<String, String> env) {
            Map<String, String> flags = new HashMap<>();
            Map<String, String> properties = new HashMap<>();
            for (int i = 0; i < args.length; i++) {
                String arg = args[i];
                if (arg.equals("-h") || arg.equals("--help")) {
                    throw new UsageException("");
                }
                if (!arg.startsWith("--") || i + 1 >= args.length) {
                    throw new UsageException("unexpected argument: " + arg);
                }
                String value = args[++i];
                if (arg.equals("--property")) {
                    int eq = value.indexOf('=');
                    if (eq <= 0) {
                        throw new UsageException("--property wants KEY=VALUE, got " + value);
                    }
                    properties.put(value.substring(0, eq), value.substring(eq + 1));
                } else {
                    flags.put(arg.substring(2), value);
                }
            }
            Lookup get = (flag, variable, fallback) -> {
                String value = flags.remove(flag);
                if (value == null || value.isEmpty()) {
                    value = env.get(variable);
                }
                return value == null || value.isEmpty() ? fallback : value;
            };
            String bootstrap = get.of("bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", null);
            String input = get.of("input-topic", "KAFKA_TOPIC", "learnosity.sessions.scores");
            String sessions = get.of("sessions-topic", "SESSIONS_TOPIC", input + ".latest-sessions");
            String learners = get.of("learners-topic", "LEARNERS_TOPIC", input + ".learners");
            String registry = get.of("registry-url", "SCHEMA_REGISTRY_URL", null);
            String encoding = get.of("encoding", "VALUE_ENCODING", registry != null ? "registry" : "single-object");
            String schemaDir = get.of("schema-dir", "AVRO_SCHEMA_DIR", "avro");
            String applicationId = get.of("application-id", "APPLICATION_ID", "learnosity-learner-scores");
            String stateDir = get.of("state-dir", "STATE_DIR", null);
            if (!flags.isEmpty()) {
                throw new UsageException("unknown option(s): --" + String.join(", --", flags.keySet()));
            }
            if (bootstrap == null) {
                throw new UsageException("--bootstrap-servers (or KAFKA_BOOTSTRAP_SERVERS) is required");
            }
            if (!encoding.equals("registry") && !encoding.equals("single-object")) {
                throw new UsageException("--encoding is registry or single-object, not " + encoding);
            }
            if (encoding.equals("registry") && registry == null) {
                throw new UsageException("--encoding registry needs --registry-url (or SCHEMA_REGISTRY_URL)");
            }
            return new Options(bootstrap, input, sessions, learners, encoding, registry, Path.of(schemaDir),
                    applicationId, stateDir, properties);
        }
    }

    @FunctionalInterface
    private interface Lookup {
        String of(String flag, String variable, String fallback);
    }

    static final class UsageException extends RuntimeException {
        UsageException(String message) {
            super(message);
        }
    }

    public static void main(String[] args) throws Exception {
        Options options;
        try {
            options = Options.parse(args, System.getenv());
        } catch (UsageException e) {
            System.err.print(e.getMessage().isEmpty() ? USAGE : "error: " + e.getMessage() + "\n" + USAGE);
            System.exit(e.getMessage().isEmpty() ? 0 : 2);
            return;
        }
        System.exit(run(options));
    }

    static int run(Options options) throws InterruptedException {
        Properties config = streamsConfig(options);
        int partitions = createOutputTopics(config, options);
        Topology topology = topology(options, valueSerde(options));
        LOG.debug("topology:\n{}", topology.describe());

        KafkaStreams streams = new KafkaStreams(topology, config);
        CountDownLatch stopped = new CountDownLatch(1);
        AtomicInteger exitCode = new AtomicInteger(0);
        streams.setUncaughtExceptionHandler(exception -> {
            LOG.error("stopping: {}", exception.toString(), exception);
            exitCode.set(1);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            LOG.info("state {} -> {}", before, now);
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                stopped.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(15));
            stopped.countDown();
        }, "shutdown"));
        LOG.info("reading {} ({} partitions, {}), writing {} and {}", options.inputTopic(), partitions,
                options.encoding(), options.sessionsTopic(), options.learnersTopic());
        streams.start();
        stopped.await();
        streams.close(Duration.ofSeconds(15));
        return exitCode.get();
    }

    /** The topology: events by session (latest by event time), then sessions by learner. */
    static Topology topology(Options options, Serde<GenericRecord> eventSerde) {
        Serde<String> keys = Serdes.String();
        Serde<SessionLatest> sessionSerde = JsonSerde.of(SessionLatest.class);
        Serde<LearnerSummary> learnerSerde = JsonSerde.of(LearnerSummary.class);
        StreamsBuilder builder = new StreamsBuilder();

        KStream<String, GenericRecord> events = builder.stream(options.inputTopic(),
                Consumed.with(keys, eventSerde)
                        .withTimestampExtractor(new DtUpdatedTimestampExtractor())
                        .withName("events"));

        KTable<String, SessionLatest> sessions = events
                .filter((userId, event) -> event != null, Named.as("not-null"))
                .map((userId, event) -> KeyValue.pair(Events.string(event, "session_id"), SessionLatest.first(event)),
                        Named.as("key-by-session"))
                .groupByKey(Grouped.with("by-session", keys, sessionSerde))
                .reduce(SessionLatest::then, Named.as("latest-by-event-time"),
                        Materialized.<String, SessionLatest, KeyValueStore<Bytes, byte[]>>as("latest-sessions")
                                .withKeySerde(keys).withValueSerde(sessionSerde));
        sessions.toStream(Named.as("sessions-out"))
                .to(options.sessionsTopic(), Produced.with(keys, sessionSerde).withName("sessions-topic"));

        KTable<String, LearnerSummary> learners = sessions
                .groupBy((sessionId, session) -> KeyValue.pair(session.userId(), session),
                        Grouped.with("by-learner", keys, sessionSerde))
                .aggregate(LearnerSummary::empty,
                        (userId, session, summary) -> summary.add(session),
                        (userId, session, summary) -> summary.subtract(session),
                        Named.as("learner-summary"),
                        Materialized.<String, LearnerSummary, KeyValueStore<Bytes, byte[]>>as("learners")
                                .withKeySerde(keys).withValueSerde(learnerSerde));
        learners.toStream(Named.as("learners-out"))
                .to(options.learnersTopic(), Produced.with(keys, learnerSerde).withName("learners-topic"));
        return builder.build();
    }

    /** The event value serde: read-only (this app never writes events). */
    static Serde<GenericRecord> valueSerde(Options options) {
        Deserializer<GenericRecord> deserializer;
        if (options.encoding().equals("registry")) {
            AvroKafkaDeserializer<GenericRecord> apicurio = new AvroKafkaDeserializer<>();
            apicurio.configure(registrySerdeConfig(options.registryUrl()), false);
            deserializer = apicurio;
        } else {
            deserializer = new SingleObjectDeserializer(options.schemaDir());
        }
        Serializer<GenericRecord> refuse = (topic, value) -> {
            throw new UnsupportedOperationException("this app does not write events");
        };
        return Serdes.serdeFrom(refuse, deserializer);
    }

    /**
     * Apicurio's Avro deserializer reading the Confluent wire format: magic byte 0, then a
     * 4-byte big-endian id, which Apicurio 3's ccompat API hands out as the content id.
     */
    static Map<String, Object> registrySerdeConfig(String registryUrl) {
        Map<String, Object> serde = new HashMap<>();
        serde.put("apicurio.registry.url", apicurioV3Url(registryUrl));
        serde.put("apicurio.registry.id-handler", "io.apicurio.registry.serde.Default4ByteIdHandler");
        serde.put("apicurio.registry.use-id", "contentId");
        serde.put("apicurio.registry.headers.enabled", "false"); // the id is in the payload
        return serde;
    }

    /** The Apicurio v3 API URL from the ccompat URL, the v3 URL or the registry's root. */
    static String apicurioV3Url(String url) {
        String trimmed = url.replaceAll("/+$", "");
        int apis = trimmed.indexOf("/apis/");
        String root = apis >= 0 ? trimmed.substring(0, apis) : trimmed;
        return root + "/apis/registry/v3";
    }

    static Properties streamsConfig(Options options) {
        Properties config = new Properties();
        config.put(StreamsConfig.APPLICATION_ID_CONFIG, options.applicationId());
        config.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, options.bootstrapServers());
        // Exactly once: the outputs change once per event even when the app restarts. It also
        // reads read_committed, so the connector's aborted transactions are never counted.
        config.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        config.put(StreamsConfig.consumerPrefix(ConsumerConfig.ISOLATION_LEVEL_CONFIG), "read_committed");
        config.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        // Kafka 5 turns this on by default; on now, so the app behaves the same after an upgrade.
        config.put("processing.exception.handler.global.enabled", "true");
        if (options.stateDir() != null) {
            config.put(StreamsConfig.STATE_DIR_CONFIG, options.stateDir());
        }
        config.putAll(options.properties());
        return config;
    }

    /**
     * The output topics, compacted (each holds a table), with the input's partition count.
     * Kafka Streams creates its internal topics but not the ones it writes to.
     */
    static int createOutputTopics(Properties config, Options options) {
        Map<String, Object> adminConfig = new HashMap<>();
        for (String name : config.stringPropertyNames()) {
            if (AdminClientConfig.configNames().contains(name)) {
                adminConfig.put(name, config.getProperty(name));
            }
        }
        try (Admin admin = Admin.create(adminConfig)) {
            TopicDescription input;
            try {
                input = admin.describeTopics(List.of(options.inputTopic())).allTopicNames().get()
                        .get(options.inputTopic());
            } catch (ExecutionException e) {
                if (e.getCause() instanceof UnknownTopicOrPartitionException) {
                    throw new IllegalStateException("the input topic " + options.inputTopic()
                            + " does not exist: start the connector first (it creates it)", e);
                }
                throw new IllegalStateException("cannot describe " + options.inputTopic() + ": " + e.getCause(), e);
            }
            int partitions = input.partitions().size();
            List<NewTopic> topics = new ArrayList<>();
            for (String name : List.of(options.sessionsTopic(), options.learnersTopic())) {
                topics.add(new NewTopic(name, Optional.of(partitions), Optional.empty())
                        .configs(Map.of(TopicConfig.CLEANUP_POLICY_CONFIG, TopicConfig.CLEANUP_POLICY_COMPACT)));
            }
            admin.createTopics(topics).values().forEach((name, future) -> {
                try {
                    future.get();
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) {
                        throw new IllegalStateException("cannot create " + name + ": " + e.getCause(), e);
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException(e);
                }
            });
            return partitions;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }
}
