// tb_rom_bank: rom_bank (rtl-ref/rom_bank.v) against the C reference of the ROM image format
// (weights/es_rom.c): every bank of every unit of a ROM image whose geometry matches the model's
// parameters is loaded into the RTL bank from the bytes es_rom_unit_bytes gathers (stream row r in
// bank r mod banks, bank row r / banks), then every row is read in a random order, back to back,
// and compared bit for bit; the read latency is measured and compared with the chip's
// read_latency_cycles for that unit (tile.rom, head.embed_rom, head.lm_rom).
//   tb_rom_bank ROM_IMAGE CHIP SEED [PASSES]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include "Vrom_bank.h"
#include "verilated.h"
extern "C" {
#include "es_chip.h"
#include "es_rom.h"
#include "es_stats.h" /* es_splitmix64 */
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        std::fprintf(stderr, "usage: tb_rom_bank ROM_IMAGE CHIP SEED [PASSES]\n");
        return 2;
    }
    uint64_t rng = std::strtoull(argv[3], nullptr, 10);
    const int passes = argc > 4 ? std::atoi(argv[4]) : 1;
    const int ROWS = TB_ROWS, RB = TB_ROW_BITS, CM = TB_COL_MUX, BYTES = RB / 8;
    es_err e{};
    es_rom_image img;
    es_chip chip;
    if (es_rom_open(&img, argv[1], &e) || es_chip_load(&chip, argv[2], nullptr, 0, &e)) {
        std::fprintf(stderr, "tb_rom_bank: %s\n", e.msg);
        return 2;
    }
    const char *tmpdir = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
    std::string hex = std::string(tmpdir) + "/tb_rom_bank." + std::to_string((long)getpid()) + ".hex";
    long reads = 0, mism = 0, banks_done = 0;
    int64_t latency = -1;
    int units = 0, lat_bad = 0;
    for (int u = 0; u < img.n_units; u++) {
        const es_rom_unit *un = &img.units[u];
        if (un->rows != ROWS || un->row_bits != RB) continue; /* another geometry: another build */
        units++;
        const int64_t want_lat = un->id >= 0 ? chip.store.tile_rom.latency : un->id == -1 ? chip.store.embed_rom.latency
                                                                                 : chip.store.lm_rom.latency;
        std::vector<uint8_t> stream((size_t)(un->stream_rows * BYTES));
        if (es_rom_unit_bytes(&img, u, stream.data(), &e)) {
            std::fprintf(stderr, "tb_rom_bank: %s\n", e.msg);
            return 2;
        }
        for (int64_t b = 0; b < un->banks; b++) {
            /* the bank's rows: stream rows b, b + banks, ... (unused rows are zero) */
            std::vector<uint8_t> bank((size_t)ROWS * BYTES, 0);
            for (int64_t r = 0; r < ROWS; r++) {
                int64_t s = b + r * un->banks;
                if (s < un->stream_rows) std::memcpy(&bank[(size_t)(r * BYTES)], &stream[(size_t)(s * BYTES)], BYTES);
            }
            FILE *f = std::fopen(hex.c_str(), "w");
            if (!f) { std::perror(hex.c_str()); return 2; }
            for (int p = 0; p < (ROWS + CM - 1) / CM; p++) { /* physical row: its words, word 0 lowest */
                for (int w = CM - 1; w >= 0; w--)
                    for (int k = BYTES - 1; k >= 0; k--) {
                        int64_t r = (int64_t)p * CM + w;
                        std::fprintf(f, "%02x", r < ROWS ? bank[(size_t)(r * BYTES + k)] : 0);
                    }
                std::fputc('\n', f);
            }
            std::fclose(f);
            VerilatedContext ctx;
            std::string arg = "+rom=" + hex;
            const char *args[2] = {"tb", arg.c_str()};
            ctx.commandArgs(2, args);
            Vrom_bank *m = new Vrom_bank{&ctx};
            int64_t cycle = 0;
            auto tick = [&]() { m->clk = 0; m->eval(); m->clk = 1; m->eval(); cycle++; };
            /* every row in a random order, PASSES times, back to back */
            std::vector<int> order;
            for (int k = 0; k < passes; k++)
                for (int r = 0; r < ROWS; r++) order.push_back(r);
            for (size_t i = order.size(); i > 1; i--) std::swap(order[i - 1], order[es_splitmix64(&rng) % i]);
            std::vector<int64_t> issued(order.size() + 8, -1);
            size_t next_out = 0;
            for (size_t k = 0; k < order.size() + 4; k++) {
                bool in = k < order.size();
                m->rd_valid = in;
                m->rd_row = in ? (uint32_t)order[k] : 0;
                tick();
                if (in) issued[k] = cycle;
                if (m->out_valid) {
                    size_t j = next_out++;
                    int64_t lat = cycle - issued[j] + 1; /* counting the edge that took the address */
                    if (latency < 0) latency = lat;
                    if (lat != latency) mism++;
                    const uint8_t *want = &bank[(size_t)(order[j] * BYTES)];
                    for (int q = 0; q < BYTES; q++) {
                        uint8_t got = (uint8_t)(m->out_data[q / 4] >> (8 * (q % 4)));
                        if (got != want[q]) {
                            if (mism < 5)
                                std::fprintf(stderr, "unit %s bank %lld row %d byte %d: rtl %02x, image %02x\n",
                                             un->label, (long long)b, order[j], q, got, want[q]);
                            mism++;
                            break;
                        }
                    }
                    reads++;
                }
            }
            if (next_out != order.size()) mism++;
            if (latency != want_lat) lat_bad++;
            delete m;
            banks_done++;
        }
    }
    std::remove(hex.c_str());
    std::printf("rom_bank rows %d row_bits %d col_mux %d: %d units, %ld banks, %ld row reads, %ld mismatches, "
                "latency %lld cycles (the chip's read_latency_cycles: %lld), initiation interval 1\n",
                ROWS, RB, CM, units, banks_done, reads, mism, (long long)latency, (long long)chip.store.tile_rom.latency);
    es_rom_close(&img);
    es_chip_free(&chip);
    if (!units) { std::fprintf(stderr, "tb_rom_bank: no unit of %s has %d rows of %d bits\n", argv[1], ROWS, RB); return 1; }
    return mism || lat_bad ? 1 : 0;
}
