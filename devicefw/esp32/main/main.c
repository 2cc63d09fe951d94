/* ESP-IDF entry point of the hilrun C firmware. */
#include "port_espidf.h"

void app_main(void) { hil_espidf_start(); }
