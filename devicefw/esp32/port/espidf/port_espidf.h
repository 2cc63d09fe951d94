#ifndef HIL_PORT_ESPIDF_H
#define HIL_PORT_ESPIDF_H
/* Start the firmware: UART, NVS, the agent task and the MQTT control task. */
void hil_espidf_start(void);
#endif
