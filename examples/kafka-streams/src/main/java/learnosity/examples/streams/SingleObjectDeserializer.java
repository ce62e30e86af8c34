package learnosity.examples.streams;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;

/**
 * Avro single-object encoding (C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint of
 * the writer schema, the Avro body), decoded with the schema files only: no registry.
 *
 * <p>Every session_score_changed.v*.avsc in the folder is a known writer schema; the newest
 * is the reader schema, so an event written by any published version reads as the newest
 * (Avro schema resolution). A fingerprint of no file in the folder fails the record.
 */
public final class SingleObjectDeserializer implements Deserializer<GenericRecord> {
    private static final Pattern VERSIONED = Pattern.compile("session_score_changed\\.v(\\d+)\\.avsc");

    private final BinaryMessageDecoder<GenericRecord> decoder;
    private final String known;

    public SingleObjectDeserializer(Path schemaDir) {
        List<Path> files = schemaFiles(schemaDir);
        Schema reader = parse(files.get(files.size() - 1));
        decoder = new BinaryMessageDecoder<>(GenericData.get(), reader);
        StringBuilder names = new StringBuilder();
        for (Path file : files) {
            Schema writer = parse(file);
            decoder.addSchema(writer);
            names.append(String.format(" %s=%016x", file.getFileName(),
                    Long.reverseBytes(SchemaNormalization.parsingFingerprint64(writer))));
        }
        known = names.toString().trim();
    }

    @Override
    public GenericRecord deserialize(String topic, byte[] data) {
        if (data == null) {
            return null;
        }
        if (data.length < 10 || (data[0] & 0xff) != 0xc3 || data[1] != 0x01) {
            String hint = data.length > 0 && data[0] == 0
                    ? " (a 0 byte first is the Confluent wire format: use --encoding registry)"
                    : "";
            throw new SerializationException("not Avro single-object encoding on " + topic + hint);
        }
        try {
            return decoder.decode(data);
        } catch (IOException | RuntimeException e) {
            throw new SerializationException(String.format(
                    "cannot decode a single-object event on %s with fingerprint %s (known: %s): %s",
                    topic, hex(data, 2, 10), known, e), e);
        }
    }

    /** The schema files in version order, oldest first. */
    static List<Path> schemaFiles(Path dir) {
        List<Path> files = new ArrayList<>();
        try (Stream<Path> listing = Files.list(dir)) {
            listing.filter(p -> VERSIONED.matcher(p.getFileName().toString()).matches()).forEach(files::add);
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot list the schema folder " + dir + ": " + e, e);
        }
        if (files.isEmpty()) {
            throw new IllegalArgumentException("no session_score_changed.v*.avsc in " + dir);
        }
        files.sort(Comparator.comparingInt(SingleObjectDeserializer::version));
        return files;
    }

    private static int version(Path file) {
        Matcher m = VERSIONED.matcher(file.getFileName().toString());
        if (!m.matches()) {
            throw new IllegalStateException(file.toString());
        }
        return Integer.parseInt(m.group(1));
    }

    private static Schema parse(Path file) {
        try {
            return new Schema.Parser().parse(file.toFile());
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read " + file + ": " + e, e);
        }
    }

    private static String hex(byte[] data, int from, int to) {
        StringBuilder out = new StringBuilder();
        for (int i = from; i < to; i++) {
            out.append(String.format("%02x", data[i]));
        }
        return out.toString();
    }
}
